"""refplay.reproduce"""
