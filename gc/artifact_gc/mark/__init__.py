"""mark"""
