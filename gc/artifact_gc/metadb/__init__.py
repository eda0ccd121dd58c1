"""metadb"""
