"""Built-in airisd plugins, one folder each."""
