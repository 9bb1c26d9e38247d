"""refplay.plots"""
