"""The studio: a web page (Gradio) that samples a trained run, an export or the reference
checkpoint, with every prompting task, and shows each result with its world scores.

  choices   what the loaded model offers: sizes, lengths, samplers, tasks, world or not
  forms     the form's raw values -> SampleSettings and task inputs, or one clear sentence
  judge     world scores of a result against its prompt (world models)
  session   the loaded model, the jobs it runs and the results made since the start
  layout    the Gradio page and its API, and how it is served
experiments/serve.py is the runner.
"""
