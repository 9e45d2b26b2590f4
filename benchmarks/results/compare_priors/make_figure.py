import numpy as np, matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
real = dict(np.load('/work/main/.gpuwork/real.npz'))
R = {k: dict(np.load(f'/tmp/i17res/recon_{k}.npz')) for k in ['old', 'new']}
names = ['ct_small', 'mr_abdomen', 'camera', 'cell', 'coins', 'microaneurysms', 'hubble', 'retina']
scale = {'ct': 0.4, 'mri_x4': 1.0, 'inpaint': 1.0}
fig, axes = plt.subplots(len(names), 7, figsize=(12.5, 14)); fig.subplots_adjust(left=0.04, right=0.9, top=0.97, bottom=0.01, wspace=0.03, hspace=0.05)
for i, n in enumerate(names):
    axes[i, 0].imshow(real[f'{n}_128'], cmap='gray', vmin=0, vmax=1); axes[i, 0].set_ylabel(n)
    for j, task in enumerate(['ct', 'mri_x4', 'inpaint']):
        for k, lab in enumerate(['old', 'new']):
            ax = axes[i, 1 + 2 * j + k]
            im = ax.imshow(R[lab][f'{task}__{n}'].astype(np.float32) / scale[task], cmap='gray', vmin=0, vmax=1)
            if i == 0: ax.set_title(f'{task}: {lab}')
for ax in axes.flat: ax.set_xticks([]); ax.set_yticks([])
axes[0, 0].set_title('ground truth')
fig.colorbar(im, cax=fig.add_axes([0.92, 0.35, 0.015, 0.3]), label='value / demo scale (CT: 0.4 1/cm, others a.u.)')
fig.savefig('benchmarks/results/compare_priors/real_recons.png', dpi=64)
