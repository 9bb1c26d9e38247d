"""refplay.analysis"""
