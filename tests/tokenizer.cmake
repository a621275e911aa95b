r1_add_test(test_tokenizer SOURCES test_tokenizer.cpp LIBS r1_tokenizer)
