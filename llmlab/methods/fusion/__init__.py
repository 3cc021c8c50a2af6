"""PTvsRI (Zan et al., COLING 2022; zanchangtong/PTvsRI): a randomly initialised (RI) and a pre-trained (PT)
translation model, and their fusion by optimal-transport neuron alignment."""
