"""The model: the model table and safe checkpoint loading (:mod:`.models`), the compiled CPU
runtimes (:mod:`.backends`), every pixel space and each model's published resize (:mod:`.geometry`),
intensity presets (:mod:`.intensity`), and the one encode/decode seam (:mod:`.inference`)."""
