"""refplay.nn"""
