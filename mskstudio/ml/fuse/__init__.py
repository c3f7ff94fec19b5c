"""Clinical data in the models: feature table, metadata baselines, late fusion, stacking, ablation, SHAP."""
