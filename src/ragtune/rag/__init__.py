"""ragtune.rag"""
