"""ragtune.training"""
