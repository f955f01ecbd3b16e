"""Translating new captions with their images: the translator, its command line, the text
pipeline (tokenizer and BPE) and the image feature extractor."""
