"""refplay.study"""
