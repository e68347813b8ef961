"""ragtune.distributed"""
