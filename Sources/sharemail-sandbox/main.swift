print("sharemail-sandbox: not written yet")
