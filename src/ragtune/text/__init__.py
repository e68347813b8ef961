"""ragtune.text"""
