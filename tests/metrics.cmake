# The run log: writer/reader round trip, torn lines, resume truncation, EMA, terminal/SVG/HTML
# charts and the logic of `r1 curves` / `r1 samples`.
r1_add_test(test_metrics SOURCES test_metrics.cpp LIBS r1_metrics)
# TensorBoard event files: writer/reader round trip, damaged files, the fixture the real tensorboard read.
r1_add_test(test_tensorboard SOURCES test_tensorboard.cpp LIBS r1_metrics)
