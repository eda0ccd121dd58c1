"""zenml"""
