"""Training: textual-inversion embeddings and hypernetworks (A1111's Train tab), as queue jobs.

- requests.py: typed request bodies with A1111's field names, result objects
- schedule.py: A1111's learning-rate schedule syntax ("0.005:100, 1e-3:1000")
- templates.py: prompt template files ([name], [filewords]) in textual_inversion_templates/
- dataset.py: images + caption .txt files -> latents, prompt texts, size buckets, batches
- files.py: A1111 file formats written by training (embeddings, hypernetworks, .optim)
- create.py: new embeddings (vectors from an initialization text) and hypernetworks
- diffusion.py: the denoising loss on a frozen model
- setup.py: checks and preparation shared by both jobs (nothing is written before they pass)
- loop.py: the shared optimisation loop (schedule, accumulation, clipping, saves, previews)
- embedding.py, hypernetwork.py: the two training jobs
- preview.py: preview images through the generation service
- preprocess.py: dataset preparation helpers (auto-sized crop, flips, split, captions)
- options.py, context.py, service.py: settings, dependencies, the facade UI and API call
- errors.py: TrainingError / DatasetError (messages for users)

Nothing runs at import time; every function takes its dependencies as arguments.
"""
