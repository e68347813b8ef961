"""ragtune.generation"""
