"""Ways to look at a run: the HTML report, the Bokeh explorer, SAMP."""
