# PyTorch's time for one tiny-shapes LoRA training step (the comparison point of `npm run bench`):
# diffusers' UNet2DConditionModel from examples/tiny-shapes/model, peft LoRA r=4 on to_q/to_k/to_v/to_out.0,
# batch 4 of 16x16x4 latents, 77-token text embeddings (random: the timing does not depend on them),
# epsilon MSE, backward, clip 1.0, AdamW — the recipe of reference-lora. Run with OMP_NUM_THREADS=1:
#   export DF=/work/df PROJECT=$PWD; source /work/shared/tools/diffusers-cpu/env.sh
#   OMP_NUM_THREADS=1 $PY bench/reference/torch_tiny_shapes_step.py
# Prints one JSON line: median wall and CPU ms per step over the timed steps.
import json, os, sys, time
import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

steps = int(os.environ.get('STEPS', '12'))
warmup = 3
torch.manual_seed(0)
root = os.environ.get('PROJECT', '.')
unet = UNet2DConditionModel.from_pretrained(os.path.join(root, 'examples/tiny-shapes/model'), subfolder='unet', torch_dtype=torch.float32)
unet.requires_grad_(False)
unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights='gaussian', target_modules=['to_k', 'to_q', 'to_v', 'to_out.0']))
params = [p for p in unet.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2, eps=1e-8)
ch = unet.config.in_channels
size = unet.config.sample_size
latents = torch.randn(4, ch, size, size)
text = torch.randn(4, 77, unet.config.cross_attention_dim)
walls, cpus = [], []
for i in range(warmup + steps):
    w0, c0 = time.perf_counter(), time.process_time()
    noise = torch.randn_like(latents)
    t = torch.randint(0, 1000, (4,))
    pred = unet(latents + noise, t, text).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    if i >= warmup:
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
med = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'steps': steps, 'wall_ms': round(med(walls) * 1000, 1), 'cpu_ms': round(med(cpus) * 1000, 1), 'min_wall_ms': round(min(walls) * 1000, 1)}))
