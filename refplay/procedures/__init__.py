"""refplay.procedures"""
