"""prefloop trainer: the method's models on Hugging Face transformers + Accelerate.

sft.py (step 1), reward.py (step 2), ppo.py (step 3: PPO / PPO-ptx), sample.py, score.py;
models.py loads and saves models, data.py reads the export records, config.py holds the
hyper-parameters, callbacks.py the progress API, cli.py the shell commands. See docs/trainer.md.
"""
