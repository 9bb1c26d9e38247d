"""refplay.oracle"""
