"""streamlabel.models"""
