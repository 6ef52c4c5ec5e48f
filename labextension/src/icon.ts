import { LabIcon } from '@jupyterlab/ui-components';

import iconSvg from '../style/icon.svg';

/** The sidebar tab's and the run views' icon: a small run graph. */
export const durableIcon = new LabIcon({ name: 'durable_nb:runs', svgstr: iconSvg });
