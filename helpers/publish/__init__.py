"""08: export, model card, upload to the Hub, and the ipywidgets demo."""
