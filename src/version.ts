// Overridden at release time; "dev" like flannel's unset linker flag.
export const VERSION = 'v0.1.0-flannel-ts';
