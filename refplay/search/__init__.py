"""refplay.search"""
