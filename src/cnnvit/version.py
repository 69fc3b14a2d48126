"""cnnvit's version, alone in a leaf module that imports nothing, so the modules that record or
print it (measure.py, cli_parser.py) read it without importing the package face, whose lazy
attributes reach the pipeline, rescoring and the study, above them in the data flow."""

__version__ = "0.1.0"
