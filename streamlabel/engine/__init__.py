"""streamlabel.engine"""
