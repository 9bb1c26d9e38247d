"""refplay.data"""
