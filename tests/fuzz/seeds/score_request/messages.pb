:
systemYou are helpful.:'
userHow do I sort a list in Python?