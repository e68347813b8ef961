"""ragtune.evaluation"""
