"""streamlabel.data"""
