// ShareMailStore: being written.
