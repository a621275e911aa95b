# The run log: writer/reader round trip, torn lines, resume truncation, EMA, terminal/SVG/HTML
# charts and the logic of `r1 curves` / `r1 samples`.
r1_add_test(test_metrics SOURCES test_metrics.cpp LIBS r1_metrics)
