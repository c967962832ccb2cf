"""streamlabel.evaluation"""
