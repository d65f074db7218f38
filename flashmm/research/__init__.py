"""Research tools: backtests, market statistics, the model's dataset, training and evaluation.

Live code (core, venues, model.predictor) never imports from here."""
