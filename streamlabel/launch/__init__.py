"""streamlabel.launch"""
