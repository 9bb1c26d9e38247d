"""refplay.train"""
