/** The geometry every conv launcher and variant takes. */

/** Geometry of a 2-D convolution (square stride and padding). */
export interface Conv2dGeometry {
  batch: number;
  inC: number;
  inH: number;
  inW: number;
  outC: number;
  outH: number;
  outW: number;
  kH: number;
  kW: number;
  stride: number;
  pad: number;
}
