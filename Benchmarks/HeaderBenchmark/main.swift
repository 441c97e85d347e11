// Placeholder: the header benchmark is being written.
print("header-benchmark: not written yet")
