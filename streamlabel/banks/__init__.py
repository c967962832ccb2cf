"""streamlabel.banks"""
