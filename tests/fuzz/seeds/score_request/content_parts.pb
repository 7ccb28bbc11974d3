:J
user
textTranslate to German:
	image_urlx
textgood morning