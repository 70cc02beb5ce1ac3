raise RuntimeError("toy extension is broken on purpose")
