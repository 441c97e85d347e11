// PostfixLab: being moved here from Tests/EndToEndTests/Support.
