"""ragtune.server"""
