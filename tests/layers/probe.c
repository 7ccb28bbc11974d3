/* probe.c — compiled with a consumer's include directories and one header
 * (PROBE_HEADER): the boundary test expects the engine's public headers to
 * be found and every internal header to be missing. */
#include PROBE_HEADER

int main(void) { return 0; }
