"""Training layer: knowledge distillation of hand mesh students from a HaMeR teacher.

Layering: ``models <- pipeline <- training <- cli``. Training sits between the pipeline and the
engines because it needs both lower layers (the models it trains, and the pipeline's dataset
readers, augmentation and HaMeR crops it feeds them) while nothing that runs a model in
production (engines, the ROS nodes) may depend on it: a robot never imports an optimiser,
TensorBoard or a data loader. Only the CLI (``fasthmr distill``) imports this package.
"""
