"""streamlabel.methods"""
